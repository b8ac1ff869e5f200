"""``hookline up`` as a subprocess on free ports, stopped by its own pid."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from hookline.embedded_redis import free_port

from support.processes import http_json, terminate
from support.waiting import wait_until


def free_block(count: int) -> int:
    """A port p such that p .. p+count-1 are all free (workers take consecutive ports)."""
    for _ in range(200):
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError(f"no block of {count} free ports found")


class System:
    def __init__(self, workdir: Path, env: dict[str, str], workers: int = 2) -> None:
        self.workdir = workdir
        self.ingress_port = free_port()
        self.status_port = free_port()
        self.dispatcher_port = free_port()
        self.worker_port = free_block(workers)
        self.env = {
            **os.environ,
            **env,
            "HOOKLINE_INGRESS_PORT": str(self.ingress_port),
            "HOOKLINE_STATUS_PORT": str(self.status_port),
            "HOOKLINE_DISPATCHER_PORT": str(self.dispatcher_port),
            "HOOKLINE_WORKER_PORT": str(self.worker_port),
            "HOOKLINE_LOG_FORMAT": "json",
        }
        self.workers = workers
        self.log_path = workdir / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def status(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"

    def start(self, timeout: float = 60.0) -> System:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hookline.cli", "up", "--workers", str(self.workers)],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self._ready, timeout, what="hookline up to print its ready line")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"hookline up exited: {self.logs()[-3000:]}")
        return "hookline is ready" in self.logs()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def job(self, job_id: str) -> dict[str, object]:
        status, body = http_json(f"{self.status}/jobs/{job_id}")
        return body if status == 200 else {}

    def stop(self, timeout: float = 60.0) -> int | None:
        return terminate(self.process, timeout)
