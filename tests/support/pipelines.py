"""Pipelines the tests run in real worker processes (workers get ``tests`` on PYTHONPATH)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any


def record(ctx: Any) -> dict[str, Any]:
    """Note every execution in ``$HOOKLINE_TEST_RECORD`` (one line per run, appended
    atomically), then work for 20-150 ms so that crashes land mid-job."""
    path = Path(os.environ["HOOKLINE_TEST_RECORD"])
    line = f"{ctx.job_id} {ctx.attempt} {ctx.worker}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    time.sleep(random.uniform(0.02, 0.15))  # the job's own work, not synchronisation
    return {"ran": True, "attempt": ctx.attempt}
