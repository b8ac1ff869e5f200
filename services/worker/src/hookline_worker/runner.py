"""Running one pipeline: a Python callable or a command in its own process group."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from hookline.errors import PipelineError
from hookline.events import JobError, JobSpec

from hookline_worker.context import JobContext

MAX_RESULT_BYTES = 64 * 1024
OUTPUT_TAIL_BYTES = 16 * 1024
KILL_GRACE = 5.0

_encoder = msgspec.json.Encoder()
_result_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class RunResult:
    ok: bool
    result: Any = None
    error: JobError | None = None


def load_handler(path: str) -> Callable[..., Any]:
    """Import ``package.module:function``; a bad path is a PipelineError, not a crash."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise PipelineError(f"handler {path!r} is not of the form 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"cannot import handler {path!r}: {exc}") from exc
    if not callable(target):
        raise PipelineError(f"handler {path!r} is not callable")
    return target  # type: ignore[no-any-return]


def error_of(exc: BaseException, *, retryable: bool = True) -> JobError:
    tail = "".join(traceback.format_exception(exc))[-OUTPUT_TAIL_BYTES:]
    return JobError(
        type=type(exc).__name__, message=str(exc)[:2000], traceback=tail, retryable=retryable
    )


def checked_result(value: Any) -> RunResult:
    """A handler's return value, if it encodes as JSON within the size cap."""
    try:
        size = len(_encoder.encode(value))
    except (TypeError, msgspec.EncodeError) as exc:
        return RunResult(
            False,
            error=JobError(
                type="ResultNotSerializable",
                message=f"result is not JSON-serialisable: {exc}",
                retryable=False,
            ),
        )
    if size > MAX_RESULT_BYTES:
        return RunResult(
            False,
            error=JobError(
                type="ResultTooLarge",
                message=f"result is {size} bytes, over the {MAX_RESULT_BYTES} byte cap",
                retryable=False,
            ),
        )
    return RunResult(True, result=value)


async def run_handler(spec: JobSpec, ctx: JobContext) -> RunResult:
    assert spec.handler is not None
    try:
        func = load_handler(spec.handler)
    except PipelineError as exc:
        return RunResult(False, error=error_of(exc, retryable=False))
    try:
        if inspect.iscoroutinefunction(func):
            value = await asyncio.wait_for(func(ctx), timeout=spec.timeout)
        else:
            value = await asyncio.wait_for(asyncio.to_thread(func, ctx), timeout=spec.timeout)
    except TimeoutError:
        return RunResult(
            False,
            error=JobError(type="Timeout", message=f"handler ran longer than {spec.timeout:g}s"),
        )
    except Exception as exc:  # the pipeline's own failure is the job's error
        return RunResult(False, error=error_of(exc))
    return checked_result(value)


async def run_command(spec: JobSpec, ctx: JobContext, work_dir: Path) -> RunResult:
    """Run the argv (no shell) in a new session, so a timeout can kill the whole tree."""
    assert spec.command is not None
    cwd = work_dir / ctx.job_id
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env, **_job_env(ctx)}
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.command,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return RunResult(False, error=error_of(exc, retryable=False))
    assert proc.stdout is not None
    assert proc.stderr is not None
    out_task = asyncio.create_task(_tail(proc.stdout))
    err_task = asyncio.create_task(_tail(proc.stderr))
    try:
        await asyncio.wait_for(proc.wait(), timeout=spec.timeout)
    except TimeoutError:
        await terminate_group(proc)
        await asyncio.gather(out_task, err_task)
        return RunResult(
            False,
            error=JobError(type="Timeout", message=f"command ran longer than {spec.timeout:g}s"),
        )
    except asyncio.CancelledError:
        await terminate_group(proc)
        raise
    stdout, stderr = await asyncio.gather(out_task, err_task)
    if proc.returncode != 0:
        return RunResult(
            False,
            error=JobError(
                type="CommandFailed",
                message=f"exit status {proc.returncode}",
                traceback=stderr.decode("utf-8", "replace") or None,
            ),
        )
    return checked_result(_result_from_stdout(stdout))


def _result_from_stdout(stdout: bytes) -> Any:
    """The JSON object on the last non-empty line of stdout, else ``{"exit_code": 0}``."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if lines:
        try:
            return _result_decoder.decode(lines[-1])
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
    return {"exit_code": 0}


async def _tail(stream: asyncio.StreamReader) -> bytes:
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-OUTPUT_TAIL_BYTES:]
    return kept


async def terminate_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), timeout=wait)
            return
        except TimeoutError:
            continue


def _job_env(ctx: JobContext) -> dict[str, str]:
    env = {
        "HOOKLINE_JOB_ID": ctx.job_id,
        "HOOKLINE_DELIVERY_ID": ctx.delivery_id,
        "HOOKLINE_ATTEMPT": str(ctx.attempt),
        "HOOKLINE_PIPELINE": ctx.pipeline,
        "HOOKLINE_JOB_ARTIFACTS": str(ctx.artifacts_dir),
    }
    return env
