"""Operator commands: what requeue, cancel and purge do to the jobs they name. Reads go
through the caller's WATCHing pipeline, so the plan stays true until it is committed."""

from __future__ import annotations

from datetime import datetime
from typing import assert_never

from hookline.events import FailedPurgeRequested, JobCancelRequested, JobRequeueRequested
from hookline.keys import Keys
from redis.asyncio.client import Pipeline as RedisPipeline

from hookline_dispatcher import lifecycle
from hookline_dispatcher.lifecycle import JobState, Plan

# The most failed jobs one `requeue --all` or `empty failed` handles (the answer says
# when more remain, and the command can simply be sent again).
MAX_BULK = 1000

Command = JobRequeueRequested | JobCancelRequested | FailedPurgeRequested


class Operator:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    async def load(self, pipe: RedisPipeline, job_id: str) -> JobState | None:
        raw = await pipe.hgetall(self.keys.dispatcher_job(job_id))
        return JobState.load(job_id, raw)

    async def plan(
        self, pipe: RedisPipeline, command: Command, now: datetime
    ) -> tuple[Plan, bool, str]:
        """What ``command`` does: the writes, whether it was accepted, and the answer."""
        match command:
            case JobCancelRequested():
                return await self._cancel(pipe, command, now)
            case JobRequeueRequested() if command.job_id and not command.all_failed:
                return await self._requeue_one(pipe, command.job_id, now)
            case JobRequeueRequested() if command.all_failed and not command.job_id:
                plans, more = await self._failed(pipe, command.queue)
                plan = _merge([lifecycle.requeue(self.keys, s, now) for s in plans])
                where = f" on queue {command.queue}" if command.queue else ""
                return plan, True, f"requeued {len(plans)} failed job(s){where}{more}"
            case JobRequeueRequested():
                return Plan(), False, "requeue needs either a job id or all_failed, not both"
            case FailedPurgeRequested():
                states, more = await self._failed(pipe, command.queue)
                plan = _merge(
                    [lifecycle.purge(self.keys, s, command.requested_by, now) for s in states]
                )
                plan.job_ids = [s.job_id for s in states]
                where = f" on queue {command.queue}" if command.queue else ""
                return plan, True, f"purged {len(states)} failed job(s){where}{more}"
            case _:
                assert_never(command)

    async def _cancel(
        self, pipe: RedisPipeline, command: JobCancelRequested, now: datetime
    ) -> tuple[Plan, bool, str]:
        state = await self.load(pipe, command.job_id)
        job = command.job_id
        if state is None:
            return Plan(), False, await self._unknown(pipe, job)
        if state.phase == "canceled":
            return Plan(), True, f"job {job} is already canceled"
        if state.phase in ("finished", "failed", "skipped"):
            return Plan(), False, f"job {job} already ended {state.phase}: nothing to cancel"
        if state.phase == "started" and state.cancel >= state.attempt:
            return Plan(), True, f"job {job}: cancel already sent to attempt {state.attempt}"
        by = command.requested_by or "an operator"
        reason = (
            f"superseded ({by.removeprefix('supersede: ')})"
            if by.startswith("supersede:")
            else f"canceled by {by}"
        )
        plan = lifecycle.cancel(self.keys, state, reason, now)
        plan.job_ids = [job]
        return plan, True, f"job {job}: {plan.note}"

    async def _requeue_one(
        self, pipe: RedisPipeline, job: str, now: datetime
    ) -> tuple[Plan, bool, str]:
        state = await self.load(pipe, job)
        if state is None:
            return Plan(), False, await self._unknown(pipe, job)
        if state.phase in lifecycle.ACTIVE:
            return (
                Plan(),
                False,
                f"job {job} is {state.phase} (attempt {state.attempt}): not requeued",
            )
        plan = lifecycle.requeue(self.keys, state, now)
        return plan, True, f"job {job}: {plan.note}"

    async def _unknown(self, pipe: RedisPipeline, job: str) -> str:
        """Why there is nothing to do for ``job``: skipped, or never seen."""
        phase = await pipe.hget(self.keys.dispatcher_job(job), "phase")
        if phase == b"skipped":
            return f"job {job} was skipped (no route ran a pipeline): nothing to do"
        return f"job {job} is unknown (or its record expired)"

    async def _failed(self, pipe: RedisPipeline, queue: str | None) -> tuple[list[JobState], str]:
        """Failed jobs (on ``queue``), oldest first, watched so that the plan stays true."""
        await pipe.watch(self.keys.dispatcher_failed)
        ids = [_text(i) for i in await pipe.zrange(self.keys.dispatcher_failed, 0, -1)]
        states: list[JobState] = []
        for job in ids:
            await pipe.watch(self.keys.dispatcher_job(job))
            state = await self.load(pipe, job)
            if state is None or state.phase != "failed":
                continue  # its record expired: nothing left to requeue or purge
            if queue is None or state.spec.queue == queue:
                states.append(state)
            if len(states) >= MAX_BULK:
                return states, " (more remain: send the command again)"
        return states, ""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _merge(plans: list[Plan]) -> Plan:
    merged = Plan()
    for plan in plans:
        merged.ops += plan.ops
        merged.queued += plan.queued
        merged.job_ids += plan.job_ids
    return merged
