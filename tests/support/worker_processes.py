"""Workers as real processes for e2e tests: their environment, starting one, and
waiting for a file a pipeline writes."""

from __future__ import annotations

import os
from pathlib import Path

from support.processes import ServiceProcess
from support.waiting import async_wait_until

TESTS = Path(__file__).resolve().parents[1]


def worker_env(base_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **base_env,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def start_worker(
    services: list[ServiceProcess], env: dict[str, str], tmp_path: Path, *args: str
) -> ServiceProcess:
    proc = ServiceProcess("worker", env, tmp_path / "logs", args=list(args))
    services.append(proc)
    return proc.start()


async def wait_file(path: Path, timeout: float = 10.0) -> str:
    async def content() -> str:
        return path.read_text() if path.exists() else ""  # noqa: ASYNC240 - tiny file

    return await async_wait_until(content, timeout, what=f"{path.name} to be written")
