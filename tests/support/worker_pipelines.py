"""Handler pipelines for worker tests (importable as ``support.worker_pipelines:<name>``).

A job's ``meta`` tells the blocking ones which file to wait for, so a test decides when
they end without sleeping."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from hookline_worker.context import JobContext


async def noop(ctx: JobContext) -> None:
    return None


def echo(ctx: JobContext) -> dict[str, Any]:
    return {"job_id": ctx.job_id, "attempt": ctx.attempt, "worker": ctx.worker, "pid": os.getpid()}


async def async_echo(ctx: JobContext) -> dict[str, Any]:
    return {"job_id": ctx.job_id, "attempt": ctx.attempt}


def keep_artifact(ctx: JobContext) -> dict[str, Any]:
    """Write the payload's ``name`` to ``out.txt`` among the job's artifacts."""
    path = ctx.artifact_path("out.txt")
    path.write_text(str(ctx.payload["name"]))
    return {"artifacts_dir": str(ctx.artifacts_dir), "artifact": str(path)}


def boom(ctx: JobContext) -> None:
    raise ValueError(f"boom in {ctx.job_id}")


def huge(ctx: JobContext) -> dict[str, str]:
    return {"x": "a" * 200_000}


def not_json(ctx: JobContext) -> object:
    return {"when": object()}


def _marker(ctx: JobContext, name: str) -> Path:
    return Path(str(ctx.meta[name]))


def wait_for_file(ctx: JobContext) -> dict[str, Any]:
    """Touch ``meta.started_file`` (with the attempt), then wait for ``meta.wait_file``."""
    if "started_file" in ctx.meta:
        _marker(ctx, "started_file").write_text(f"{ctx.attempt} {ctx.worker}\n")
    while not _marker(ctx, "wait_file").exists():
        time.sleep(0.02)
    return {"attempt": ctx.attempt, "worker": ctx.worker}


async def async_wait_for_file(ctx: JobContext) -> dict[str, Any]:
    if "started_file" in ctx.meta:
        _marker(ctx, "started_file").write_text(f"{ctx.attempt} {ctx.worker}\n")
    while not _marker(ctx, "wait_file").exists():  # noqa: ASYNC110 - a file, not an event
        await asyncio.sleep(0.02)
    return {"attempt": ctx.attempt, "worker": ctx.worker}


def spin(ctx: JobContext) -> None:
    """Never ends on its own (a sync handler the worker must give up on)."""
    while True:
        time.sleep(0.01)
