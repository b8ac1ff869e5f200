"""Pipelines the end-to-end tests run in real worker processes (PYTHONPATH=tests)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def flaky(ctx: Any) -> dict[str, Any]:
    """Fails its first two attempts, then succeeds."""
    if ctx.attempt < 3:
        raise RuntimeError(f"flaky attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


def doomed(ctx: Any) -> None:
    """Never succeeds."""
    raise RuntimeError(f"doomed attempt {ctx.attempt}")


def stall_then_fail(ctx: Any) -> None:
    """Note the run in ``$HOOKLINE_TEST_RUNS/runs`` ("<attempt> <worker>" lines), wait for
    the ``gate`` file beside it, then fail (a run a test can kill its worker during)."""
    folder = Path(os.environ["HOOKLINE_TEST_RUNS"])
    with (folder / "runs").open("a") as runs:
        runs.write(f"{ctx.attempt} {ctx.worker}\n")
    while not (folder / "gate").exists():
        time.sleep(0.02)
    raise RuntimeError(f"stalled attempt {ctx.attempt}")
