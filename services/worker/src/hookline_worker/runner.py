"""Running one pipeline: a Python callable or a command in its own process group.

Both kinds stop cleanly when their task is cancelled (timeout, cancel, shutdown): a
command's whole process group gets SIGTERM, then SIGKILL after a grace period; an async
handler is cancelled; a sync handler, which runs in a daemon thread because a thread
cannot be killed, gets an exception raised inside it at its next Python instruction.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import inspect
import os
import queue
import shutil
import signal
import subprocess
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from hookline.errors import PipelineError
from hookline.events import JobError, JobSpec

from hookline_worker.context import JobContext

MAX_RESULT_BYTES = 64 * 1024
OUTPUT_TAIL_BYTES = 16 * 1024
# After the command's own process exits, how long its output pipes may stay open
# (held by a process that left the group) before the worker stops reading them.
PIPE_CLOSE_WAIT = 1.0
# Settings and secrets of the worker itself are not passed on to commands.
_PRIVATE_ENV = ("REDIS_URL", "GITHUB_WEBHOOK_SECRET")
_PRIVATE_PREFIX = "HOOKLINE_"

_encoder = msgspec.json.Encoder()
_result_decoder = msgspec.json.Decoder(dict[str, Any])
_handlers: dict[str, Callable[..., Any]] = {}
_is_async: dict[Callable[..., Any], bool] = {}


@dataclass(frozen=True, slots=True)
class RunResult:
    ok: bool
    result: Any = None
    error: JobError | None = None


class JobInterrupted(BaseException):
    """Raised inside a sync handler's thread when its job is stopped (a BaseException, so
    that a handler's ``except Exception`` does not swallow it)."""


def load_handler(path: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (once); a bad path is a PipelineError."""
    if (found := _handlers.get(path)) is not None:
        return found
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise PipelineError(f"handler {path!r} is not of the form 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # an import runs arbitrary code: any failure is the same
        raise PipelineError(f"cannot import handler {path!r}: {exc}") from exc
    if not callable(target):
        raise PipelineError(f"handler {path!r} is not callable")
    _handlers[path] = target
    return target  # type: ignore[no-any-return]


def is_async(func: Callable[..., Any]) -> bool:
    """Whether a handler is awaited (else it runs in a thread); cached per handler."""
    found = _is_async.get(func)
    if found is None:
        found = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - an async __call__ counts
        )
        _is_async[func] = found
    return found


def error_of(exc: BaseException, *, retryable: bool = True) -> JobError:
    tail = "".join(traceback.format_exception(exc))[-OUTPUT_TAIL_BYTES:]
    return JobError(
        type=type(exc).__name__, message=str(exc)[:2000], traceback=tail, retryable=retryable
    )


def checked_result(value: Any) -> RunResult:
    """A handler's return value, if it encodes as JSON within the size cap."""
    try:
        size = len(_encoder.encode(value))
    except (TypeError, msgspec.EncodeError, ValueError, OverflowError) as exc:
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


_OK_NONE = RunResult(True, result=None)


async def run_handler(func: Callable[..., Any], ctx: JobContext, is_coroutine: bool) -> RunResult:
    """Run a loaded handler; its exception is the job's error."""
    try:
        if is_coroutine:
            value = await func(ctx)
        else:
            value = await in_daemon_thread(func, ctx)
    except Exception as exc:  # the pipeline's own failure is the job's error
        return RunResult(False, error=error_of(exc))
    if value is None:
        return _OK_NONE
    return checked_result(value)


class _Job:
    __slots__ = ("cancelled", "ctx", "func", "loop", "settle", "thread")

    def __init__(
        self,
        func: Callable[[JobContext], Any],
        ctx: JobContext,
        loop: asyncio.AbstractEventLoop,
        settle: Callable[[bool, Any], None],
    ) -> None:
        self.func = func
        self.ctx = ctx
        self.loop = loop
        self.settle = settle
        self.cancelled = False
        self.thread: _JobThread | None = None


class _JobThread(threading.Thread):
    """A daemon thread that runs sync handlers one after another."""

    def __init__(self, pool: DaemonThreads) -> None:
        super().__init__(name="hookline-job", daemon=True)
        self.pool = pool
        self.inbox: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.current: _Job | None = None

    def run(self) -> None:
        while True:
            try:
                job = self.inbox.get(timeout=self.pool.idle_exit)
            except queue.Empty:
                if self.pool.retire(self):
                    return
                continue
            except JobInterrupted:  # a late interrupt of the previous job: harmless
                continue
            with contextlib.suppress(JobInterrupted):
                self._execute(job)
            if not self.pool.park(self):
                return

    def _execute(self, job: _Job) -> None:
        outcome: tuple[bool, Any] | None = None
        try:
            with self.lock:
                if job.cancelled:
                    return
                self.current = job
            outcome = (True, job.func(job.ctx))
        except JobInterrupted:
            outcome = None
        except BaseException as exc:
            outcome = (False, exc)
        finally:
            self._clear()
        if outcome is not None:
            job.loop.call_soon_threadsafe(job.settle, *outcome)

    def _clear(self) -> None:
        # An interrupt set just before this may land here: once ``current`` is None no
        # new one can be set for the job, so retrying the assignment settles it.
        while True:
            try:
                with self.lock:
                    self.current = None
                return
            except JobInterrupted:
                continue


class DaemonThreads:
    """Daemon threads for sync handlers, reused between jobs. Unlike the default
    executor, a thread stuck in an abandoned handler neither holds a slot others wait
    for (a new thread is started when none is idle) nor keeps the process from
    exiting; a stopped job gets :class:`JobInterrupted` raised inside its thread."""

    def __init__(self, max_idle: int = 64, idle_exit: float = 60.0) -> None:
        self.max_idle = max_idle
        self.idle_exit = idle_exit
        self._idle: list[_JobThread] = []
        self._lock = threading.Lock()

    def submit(self, job: _Job) -> None:
        with self._lock:
            thread = self._idle.pop() if self._idle else None
            if thread is None:
                thread = _JobThread(self)
                thread.start()
            job.thread = thread
            thread.inbox.put(job)

    def park(self, thread: _JobThread) -> bool:
        """Back to the idle list; False (the thread ends) when enough are idle."""
        with self._lock:
            if len(self._idle) >= self.max_idle:
                return False
            self._idle.append(thread)
            return True

    def retire(self, thread: _JobThread) -> bool:
        """An idle thread timed out waiting: may it end? Not if a job was just handed
        to it."""
        with self._lock:
            if thread in self._idle:
                self._idle.remove(thread)
                return True
            return thread.inbox.empty()

    @staticmethod
    def interrupt(job: _Job) -> None:
        """Stop ``job``: skipped if not started yet, else JobInterrupted is raised in its
        thread at the next Python instruction (a blocking C call finishes first)."""
        thread = job.thread
        if thread is None:
            job.cancelled = True
            return
        with thread.lock:
            job.cancelled = True
            if thread.current is job and thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(JobInterrupted)
                )


THREADS = DaemonThreads()


async def in_daemon_thread(func: Callable[[JobContext], Any], ctx: JobContext) -> Any:
    """``func(ctx)`` in one of :data:`THREADS`; cancelling this interrupts it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    job = _Job(func, ctx, loop, settle)
    THREADS.submit(job)
    try:
        return await future
    except asyncio.CancelledError:
        THREADS.interrupt(job)
        raise


def command_env(base: Mapping[str, str], spec: JobSpec, ctx: JobContext) -> dict[str, str]:
    """The environment of a command: the worker's own minus its settings and secrets,
    then the pipeline's ``env``, then the job's ids and scalar meta values."""
    env = {
        k: v for k, v in base.items() if k not in _PRIVATE_ENV and not k.startswith(_PRIVATE_PREFIX)
    }
    env.update(spec.env)
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
    hold open forever)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.loop = asyncio.get_running_loop()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
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
    spec: JobSpec, ctx: JobContext, work_dir: Path, kill_grace: float
) -> RunResult:
    """Run the argv (no shell) in a new session, in a scratch folder removed afterwards.
    Every path it is given is absolute (a relative ``work_dir`` is taken from the
    worker's working directory, not the scratch folder) and exists before it starts.
    Cancelling this coroutine terminates the whole process group first."""
    assert spec.command is not None
    cwd, payload_file = scratch_paths(work_dir, ctx)
    try:
        cwd.mkdir(parents=True, exist_ok=True)
        ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
        payload_file.write_bytes(ctx.raw_payload)
        env = command_env(os.environ, spec, ctx)
        env["HOOKLINE_PAYLOAD_FILE"] = str(payload_file)
        env["HOOKLINE_WORK_DIR"] = str(cwd)
        child = _Child(spec.command, cwd, env)
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


def scratch_paths(work_dir: Path, ctx: JobContext) -> tuple[Path, Path]:
    """A command's absolute scratch folder and payload file under ``work_dir``."""
    base = work_dir.absolute()
    return base / f"{ctx.job_id}.{ctx.attempt}", base / f"{ctx.job_id}.{ctx.attempt}.payload.json"


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
