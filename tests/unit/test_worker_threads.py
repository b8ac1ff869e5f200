"""Sync handlers run in reused daemon threads that a stopped job can interrupt."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from hookline_worker.context import JobContext
from hookline_worker.runners.threads import DaemonThreads, in_daemon_thread


def _ctx(i: int = 0) -> JobContext:
    return JobContext(
        job_id=f"j{i}",
        delivery_id="d",
        attempt=1,
        queue="q",
        pipeline="p",
        worker="w",
        meta={},
        artifacts_root=Path("/nonexistent"),
    )


def _name(ctx: JobContext) -> str:
    return threading.current_thread().name + ctx.job_id


def _job_threads() -> int:
    """Threads of the job pool only (asyncio's own executor threads come and go)."""
    return sum(1 for t in threading.enumerate() if t.name.startswith("hookline-job"))


async def test_threads_are_reused_between_jobs() -> None:
    names = [await in_daemon_thread(_name, _ctx(i)) for i in range(20)]
    assert all(name.startswith("hookline-job") for name in names)
    before = _job_threads()
    for i in range(20):
        await in_daemon_thread(_name, _ctx(i))
    assert _job_threads() <= before


async def test_a_cancelled_job_is_interrupted_and_its_thread_serves_the_next() -> None:
    started = threading.Event()
    interrupted = threading.Event()

    def spin(_: JobContext) -> None:
        started.set()
        try:
            while True:
                pass
        except BaseException:
            interrupted.set()
            raise

    pool_threads = _job_threads()
    task = asyncio.ensure_future(in_daemon_thread(spin, _ctx()))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await asyncio.to_thread(interrupted.wait, 5)
    assert (await in_daemon_thread(_name, _ctx(7))).endswith("j7")
    assert _job_threads() <= pool_threads + 1


async def test_an_idle_pool_thread_ends_after_idle_exit() -> None:
    pool = DaemonThreads(max_idle=1, idle_exit=0.05)
    from hookline_worker.runners.threads import _Job

    loop = asyncio.get_running_loop()
    done: asyncio.Future[object] = loop.create_future()
    job = _Job(_name, _ctx(), loop, lambda ok, value: done.set_result(value))
    pool.submit(job)
    assert str(await done).endswith("j0")
    thread = job.thread
    assert thread is not None
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()
