"""Daemon threads for sync handlers: reused between jobs, and interruptible.

A thread cannot be killed, so a stopped job gets :class:`JobInterrupted` raised inside
its thread at its next Python instruction; a thread stuck in an abandoned handler
neither holds a slot others wait for nor keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Any

from hookline_worker.context import JobContext


class JobInterrupted(BaseException):
    """Raised inside a sync handler's thread when its job is stopped (a BaseException, so
    that a handler's ``except Exception`` does not swallow it)."""


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
