"""The runners of pipelines behind one protocol: the attempt calls a :class:`Runner`
and gets a :class:`RunResult`, whatever kind of pipeline the job's ``run`` names.

A new kind of pipeline is a new ``Run`` Struct in ``hookline.events``, a runner module
here and one ``case`` in :func:`runner_for`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, assert_never

from hookline.errors import PipelineError
from hookline.events import CommandRun, HandlerRun, JobSpec

from hookline_worker.context import JobContext
from hookline_worker.runners.command import CommandRunner
from hookline_worker.runners.handler import handler_runner
from hookline_worker.runners.result import RunResult
from hookline_worker.runners.run_as import RunAs

__all__ = ["RunResult", "Runner", "runner_for"]


class Runner(Protocol):
    """Runs one attempt of a pipeline. Cancelling the call stops the pipeline (the
    command's process group, the handler's task or thread) before it returns."""

    @property
    def kind(self) -> str:
        """What runs, for messages: "command", "handler"."""
        ...

    async def __call__(self, ctx: JobContext) -> RunResult: ...


def runner_for(
    spec: JobSpec, work_dir: Path, kill_grace: float, run_as: RunAs | None = None
) -> Runner:
    """The runner of a job's pipeline; a PipelineError if it cannot be had (a handler
    that does not import)."""
    run = spec.run  # isinstance, not match: this is on every job's path
    if isinstance(run, HandlerRun):
        return handler_runner(run.path)
    if isinstance(run, CommandRun):
        return CommandRunner(run.argv, spec.env, work_dir, kill_grace, run_as)
    if run is None:
        raise PipelineError(f"pipeline {spec.pipeline!r} runs nothing")
    assert_never(run)
