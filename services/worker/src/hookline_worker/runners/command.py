"""The command runner: an argv run as a subprocess in its own session (process group),
no shell, in a scratch folder removed afterwards; with none of the worker's secrets
(environment, file descriptors) and, from a root worker, as ``HOOKLINE_WORKER_RUN_AS``.

Cancelling it (timeout, cancel, shutdown) sends the whole process group SIGTERM, then
SIGKILL after the kill grace. Its result is the JSON object on the last line of stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from hookline.config import FILE_SUFFIX, SECRET_VARIABLES
from hookline.events import JobError

from hookline_worker.context import JobContext
from hookline_worker.runners.result import OUTPUT_TAIL_BYTES, RunResult, checked_result, error_of
from hookline_worker.runners.run_as import RunAs

# After the command's own process exits, how long its output pipes may stay open
# (held by a process that left the group) before the worker stops reading them.
PIPE_CLOSE_WAIT = 1.0
# Settings and secrets of the worker itself are not passed on to commands.
_PRIVATE_ENV = frozenset(name for var in SECRET_VARIABLES for name in (var, var + FILE_SUFFIX))
_PRIVATE_PREFIX = "HOOKLINE_"

_result_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class CommandRunner:
    """Runs ``argv`` with the pipeline's ``env`` under ``work_dir``."""

    argv: list[str]
    env: Mapping[str, str]
    work_dir: Path
    kill_grace: float
    run_as: RunAs | None = None
    kind: str = "command"

    async def __call__(self, ctx: JobContext) -> RunResult:
        return await run_command(
            self.argv, self.env, ctx, self.work_dir, self.kill_grace, self.run_as
        )


def command_env(
    base: Mapping[str, str], pipeline_env: Mapping[str, str], ctx: JobContext
) -> dict[str, str]:
    """The environment of a command: the worker's own minus its settings and secrets,
    then the pipeline's ``env``, then the job's ids and scalar meta values."""
    env = {
        k: v for k, v in base.items() if k not in _PRIVATE_ENV and not k.startswith(_PRIVATE_PREFIX)
    }
    env.update(pipeline_env)
    env.update(job_env(ctx))
    return env


def job_env(ctx: JobContext) -> dict[str, str]:
    env = {
        "HOOKLINE_JOB_ID": ctx.job_id,
        "HOOKLINE_DELIVERY_ID": ctx.delivery_id,
        "HOOKLINE_ATTEMPT": str(ctx.attempt),
        "HOOKLINE_QUEUE": ctx.queue,
        "HOOKLINE_PIPELINE": ctx.pipeline,
        "HOOKLINE_WORKER": ctx.worker,
        "HOOKLINE_JOB_ARTIFACTS": str(ctx.artifacts_dir),
    }
    for key, value in ctx.meta.items():
        if value is not None and key.isidentifier():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"HOOKLINE_META_{key.upper()}"] = text
    return env


def command_outcome(returncode: int, stdout: bytes, stderr: bytes) -> RunResult:
    """A finished command's result: the JSON object on the last non-empty stdout line
    (else ``{"exit_code": 0}``); a non-zero exit is a failure with the stderr tail."""
    if returncode != 0:
        err = stderr.decode("utf-8", "replace")
        last = next((line for line in reversed(err.splitlines()) if line.strip()), "")
        if returncode < 0:
            try:
                what = f"killed by {signal.Signals(-returncode).name}"
            except ValueError:
                what = f"killed by signal {-returncode}"
        else:
            what = f"exit status {returncode}"
        return RunResult(
            False,
            error=JobError(
                type="CommandFailed",
                message=f"{what}: {last[:500]}" if last else what,
                traceback=err or None,
            ),
        )
    return checked_result(result_from_stdout(stdout))


def result_from_stdout(stdout: bytes) -> Any:
    """The JSON object on the last non-empty line of stdout, else ``{"exit_code": 0}``."""
    for line in reversed(stdout.splitlines()):
        if line.strip():
            try:
                return _result_decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                break
    return {"exit_code": 0}


class _Tail:
    """Reads one pipe without blocking, keeping its last OUTPUT_TAIL_BYTES bytes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.kept = bytearray()
        self.closed = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.kept += chunk
            if len(self.kept) > OUTPUT_TAIL_BYTES:
                del self.kept[:-OUTPUT_TAIL_BYTES]
            return
        self.close()

    def close(self) -> None:
        if not self.closed.done():
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.closed.set_result(None)


class _Child:
    """A command in its own session, its exit watched through a pidfd (asyncio's own
    ``Process.wait`` also waits for the pipes, which a stray background process may
    hold open forever). It inherits no file descriptor but its pipes; with ``run_as``
    it runs as that user (uid, gid and groups set in the child before exec, by
    Popen itself: no preexec_fn in a threaded worker)."""

    def __init__(
        self, argv: list[str], cwd: Path, env: dict[str, str], run_as: RunAs | None = None
    ) -> None:
        self.loop = asyncio.get_running_loop()
        switch: dict[str, Any] = {}
        if run_as is not None:
            switch = {"user": run_as.uid, "group": run_as.gid, "extra_groups": run_as.groups}
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=(),
            **switch,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.stdout = _Tail(self.loop, os.dup(self.proc.stdout.fileno()))
        self.stderr = _Tail(self.loop, os.dup(self.proc.stderr.fileno()))
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.exited: asyncio.Future[None] = self.loop.create_future()
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.loop.add_reader(self.pidfd, self._on_exit)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _on_exit(self) -> None:
        self.loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        self.proc.wait()
        if not self.exited.done():
            self.exited.set_result(None)

    async def wait(self) -> int:
        await asyncio.shield(self.exited)
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def output(self) -> tuple[bytes, bytes]:
        """Both tails, once the pipes close (or PIPE_CLOSE_WAIT after the exit, when a
        process that left the group holds them)."""
        pipes = asyncio.gather(self.stdout.closed, self.stderr.closed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pipes), PIPE_CLOSE_WAIT)
        self.stdout.close()
        self.stderr.close()
        return bytes(self.stdout.kept), bytes(self.stderr.kept)


async def run_command(
    argv: list[str],
    pipeline_env: Mapping[str, str],
    ctx: JobContext,
    work_dir: Path,
    kill_grace: float,
    run_as: RunAs | None = None,
) -> RunResult:
    """Run the argv (no shell) in a new session, in a scratch folder removed afterwards.
    Every path it is given is absolute (a relative ``work_dir`` is taken from the
    worker's working directory, not the scratch folder) and exists before it starts.
    Cancelling this coroutine terminates the whole process group first."""
    cwd, payload_file = scratch_paths(work_dir, ctx)
    env = command_env(os.environ, pipeline_env, ctx)
    env["HOOKLINE_PAYLOAD_FILE"] = str(payload_file)
    env["HOOKLINE_WORK_DIR"] = str(cwd)
    if (problem := env_problem(env)) is not None:
        return RunResult(
            False, error=JobError(type="InvalidEnvironment", message=problem, retryable=False)
        )
    try:
        cwd.mkdir(parents=True, exist_ok=True)
        ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
        payload_file.write_bytes(ctx.raw_payload)
        if run_as is not None:
            run_as.give(cwd, payload_file, ctx.artifacts_dir)
        child = _Child(argv, cwd, env, run_as)
    except OSError as exc:
        await _clean(cwd, payload_file)
        return RunResult(False, error=error_of(exc, retryable=False))
    try:
        returncode = await child.wait()
    except asyncio.CancelledError:
        await terminate_group(child, kill_grace)
        await child.output()
        await _clean(cwd, payload_file)
        raise
    _kill_leftovers(child.pid)
    try:
        stdout, stderr = await child.output()
    finally:
        await _clean(cwd, payload_file)
    return command_outcome(returncode, stdout, stderr)


def env_problem(env: Mapping[str, str]) -> str | None:
    """Why ``env`` cannot be a process's environment (a NUL byte, which a payload field
    may carry into a ``HOOKLINE_META_*`` value), naming the variable; else None."""
    for key, value in env.items():
        if "\x00" in key or "\x00" in value:
            return (
                f"environment variable {key!r} holds a NUL byte (from the job's payload, "
                "meta or pipeline env): a command's environment cannot carry one"
            )
    return None


def scratch_paths(work_dir: Path, ctx: JobContext) -> tuple[Path, Path]:
    """A command's absolute scratch folder and payload file, under ``work_dir`` in a
    folder of its worker's own (so a worker starting later can tell whose they are)."""
    base = work_dir.absolute() / ctx.worker
    return base / f"{ctx.job_id}.{ctx.attempt}", base / f"{ctx.job_id}.{ctx.attempt}.payload.json"


def scratch_owners(work_dir: Path) -> list[str]:
    """The workers with a scratch folder under ``work_dir``."""
    try:
        return [p.name for p in work_dir.absolute().iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def sweep_scratch(work_dir: Path, owners: list[str], gone: Callable[[str], bool]) -> list[str]:
    """Remove the scratch folders (and payload copies) of the ``owners`` that are
    ``gone``: what a killed worker left behind. Returns the owners swept."""
    swept = [owner for owner in owners if gone(owner)]
    for owner in swept:
        shutil.rmtree(work_dir.absolute() / owner, ignore_errors=True)
    return swept


def _kill_leftovers(pgid: int) -> None:
    """Background processes a command left behind die with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _clean(cwd: Path, payload_file: Path) -> None:
    def remove() -> None:
        shutil.rmtree(cwd, ignore_errors=True)
        payload_file.unlink(missing_ok=True)

    await asyncio.to_thread(remove)


async def terminate_group(child: _Child, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(child.exited), timeout=grace)
    _kill_leftovers(child.pid)
    await child.wait()
