"""The handler runner: a Python callable named ``package.module:function``, awaited if
it is async, else run in a daemon thread (see :mod:`.threads`)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hookline.errors import PipelineError

from hookline_worker.context import JobContext
from hookline_worker.runners.result import OK_NONE, RunResult, checked_result, error_of
from hookline_worker.runners.threads import in_daemon_thread

_runners: dict[str, HandlerRunner] = {}


@dataclass(frozen=True, slots=True)
class HandlerRunner:
    """Calls ``func(ctx)``; its exception is the job's error, its return value the result.
    Cancelling the call cancels an async handler, or interrupts a sync one's thread."""

    func: Callable[..., Any]
    is_async: bool
    kind: str = "handler"

    async def __call__(self, ctx: JobContext) -> RunResult:
        try:
            if self.is_async:
                value = await self.func(ctx)
            else:
                value = await in_daemon_thread(self.func, ctx)
        except Exception as exc:  # the pipeline's own failure is the job's error
            return RunResult(False, error=error_of(exc))
        if value is None:
            return OK_NONE
        return checked_result(value)


def handler_runner(path: str) -> HandlerRunner:
    """The runner of the handler at ``path``, imported once; a bad path is a PipelineError."""
    if (found := _runners.get(path)) is not None:
        return found
    func = load_handler(path)
    runner = HandlerRunner(func, is_async(func))
    _runners[path] = runner
    return runner


def load_handler(path: str) -> Callable[..., Any]:
    """Import ``package.module:function``; a bad path is a PipelineError."""
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
    return target  # type: ignore[no-any-return]


def is_async(func: Callable[..., Any]) -> bool:
    """Whether a handler is awaited (else it runs in a thread)."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an async __call__ counts
    )
