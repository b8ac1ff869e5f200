"""What an operator command reads before it is decided: the jobs it names, through the
caller's WATCHing pipeline, so that the plan stays true until it is committed."""

from __future__ import annotations

from datetime import datetime
from typing import assert_never

from hookline.events import Command, FailedPurgeRequested, JobCancelRequested, JobRequeueRequested
from hookline.keys import Keys
from hookline.text import text
from redis.asyncio.client import Pipeline as RedisPipeline

from hookline_dispatcher.lifecycle import commands
from hookline_dispatcher.lifecycle.commands import MAX_BULK, Answer, Failed, Known
from hookline_dispatcher.lifecycle.records import JobState, phase_of


async def load(pipe: RedisPipeline, keys: Keys, job_id: str) -> JobState | None:
    raw = await pipe.hgetall(keys.dispatcher_job(job_id))
    return JobState.load(job_id, raw)


async def known(pipe: RedisPipeline, keys: Keys, job_id: str) -> Known:
    state = await load(pipe, keys, job_id)
    if state is not None:
        return Known(job_id, state)
    phase = await pipe.hget(keys.dispatcher_job(job_id), "phase")
    return Known(job_id, None, phase_of(phase) if phase else None)


async def failed(pipe: RedisPipeline, keys: Keys, queue: str | None) -> Failed:
    """Failed jobs (on ``queue``), oldest first, watched so that the plan stays true."""
    await pipe.watch(keys.dispatcher_failed)
    ids = [text(i) for i in await pipe.zrange(keys.dispatcher_failed, 0, -1)]
    states: list[JobState] = []
    for job in ids:
        await pipe.watch(keys.dispatcher_job(job))
        state = await load(pipe, keys, job)
        if state is None or state.phase != "failed":
            continue  # its record expired: nothing left to requeue or purge
        if queue is None or state.spec.queue == queue:
            states.append(state)
        if len(states) >= MAX_BULK:
            return Failed(states, more=True)
    return Failed(states)


async def answer(pipe: RedisPipeline, keys: Keys, command: Command, now: datetime) -> Answer:
    """Read what ``command`` names, and decide it."""
    match command:
        case JobCancelRequested():
            return commands.cancel_job(keys, await known(pipe, keys, command.job_id), command, now)
        case JobRequeueRequested() if command.job_id and not command.all_failed:
            return commands.requeue_job(keys, await known(pipe, keys, command.job_id), now)
        case JobRequeueRequested() if command.all_failed and not command.job_id:
            found = await failed(pipe, keys, command.queue)
            return commands.requeue_failed(keys, found, command.queue, now)
        case JobRequeueRequested():
            return Answer(message="requeue needs either a job id or all_failed, not both")
        case FailedPurgeRequested():
            found = await failed(pipe, keys, command.queue)
            return commands.purge_failed(keys, found, command, now)
        case _:
            assert_never(command)


def watched(command: Command) -> list[str]:
    """The job ids whose records a command reads first (bulk commands watch as they read)."""
    match command:
        case JobCancelRequested():
            return [command.job_id]
        case JobRequeueRequested():
            return [command.job_id] if command.job_id else []
        case FailedPurgeRequested():
            return []
        case _:
            assert_never(command)
