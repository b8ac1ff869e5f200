"""Services as real OS processes, stopped by the exact pid the test started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hookline.embedded_redis import free_port

from support.waiting import wait_until

MODULES = {
    "ingress": "hookline_ingress",
    "dispatcher": "hookline_dispatcher",
    "worker": "hookline_worker",
    "status": "hookline_status",
}
PORT_VARS = {
    "ingress": "HOOKLINE_INGRESS_PORT",
    "dispatcher": "HOOKLINE_DISPATCHER_PORT",
    "worker": "HOOKLINE_WORKER_PORT",
    "status": "HOOKLINE_STATUS_PORT",
}


def http_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, body.decode(errors="replace")


def post_webhook(
    url: str, body: bytes, headers: dict[str, str], timeout: float = 10
) -> tuple[int, Any]:
    """POST ``body`` to ``<url>/webhook``: the status and the decoded JSON answer."""
    request = urllib.request.Request(f"{url}/webhook", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """SIGTERM exactly this process, SIGKILL it if it has not ended in ``timeout``."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def healthy(port: int, path: str = "/health") -> bool:
    try:
        status, _ = http_json(f"http://127.0.0.1:{port}{path}", timeout=1)
    except (urllib.error.URLError, OSError):
        return False
    return status == 200


class ServiceProcess:
    """One service started with ``python -m hookline_<service>``."""

    def __init__(
        self,
        service: str,
        env: dict[str, str],
        log_dir: Path,
        args: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.service = service
        self.port = port or free_port()
        self.env = {
            **os.environ,
            **env,
            PORT_VARS[service]: str(self.port),
            "HOOKLINE_LOG_FORMAT": "json",
        }
        self.args = args or []
        self.log_path = log_dir / f"{service}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 20.0) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULES[self.service], *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0, path: str = "/health") -> None:
        """Until ``path`` answers 200 (``/livez``: the process serves, whatever Redis does)."""

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.service} exited: {self.logs()[-2000:]}")
            return healthy(self.port, path)

        wait_until(ready, timeout, what=f"{self.service} to answer {path}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        return terminate(self.process, timeout)
