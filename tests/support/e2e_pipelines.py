"""Pipelines the end-to-end tests run in real worker processes (PYTHONPATH=tests)."""

from __future__ import annotations

from typing import Any


def flaky(ctx: Any) -> dict[str, Any]:
    """Fails its first two attempts, then succeeds."""
    if ctx.attempt < 3:
        raise RuntimeError(f"flaky attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


def doomed(ctx: Any) -> None:
    """Never succeeds."""
    raise RuntimeError(f"doomed attempt {ctx.attempt}")
