"""A running job's lease is its pending entry: the worker renews it, others take it over
once it lapses, and a stopping worker hands it back for immediate takeover.

An entry's idle time (time since its last delivery or claim) is the lease clock. The
owner resets it with ``XCLAIM ... 0 <id> JUSTID`` (which does not count a delivery);
a live worker claims entries idle longer than the lease timeout; a worker that stops
without finishing a job sets the entry's idle time far past any lease timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hookline import clock
from hookline.keys import EVENT_FIELD
from hookline.lua import Script
from hookline.redis_client import Redis
from hookline.retry import periodically
from hookline.streams import Entry
from hookline.text import text
from redis.exceptions import NoScriptError

from hookline_worker import rawredis
from hookline_worker.attempt import Attempt

RENEW = Script.load("hookline_worker", "renew")
HAND_BACK = Script.load("hookline_worker", "hand_back")
START = Script.load("hookline_worker", "start")

# Far past any lease timeout, yet below the current time in ms (Redis would clamp a
# larger idle time to zero).
HANDED_BACK_IDLE_MS = 10**10
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Starting:
    """One job to start: its entry, the attempt it was queued as, its cancel marker and
    its encoded ``job.started``."""

    entry: Entry
    queued_attempt: int
    cancel_key: str
    event: bytes


def by_stream(entries: Iterable[Entry]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for entry in entries:
        grouped.setdefault(entry.stream, []).append(entry.entry_id)
    return grouped


class Leases:
    def __init__(self, redis: Redis, group: str, consumer: str, started: str) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.started = started

    async def start(self, jobs: Sequence[Starting]) -> list[bool]:
        """Record ``job.started`` of each job unless its cancel marker covers it (then its
        entry is acknowledged), in one script call. Whether each job was canceled."""
        job_keys: list[str] = []
        job_args: list[Any] = []
        for job in jobs:
            job_keys += (job.cancel_key, job.entry.stream)
            job_args += (job.queued_attempt, job.entry.entry_id, job.event)
        command = START.command(
            started=self.started,
            job_keys=job_keys,
            group=self.group,
            field=EVENT_FIELD,
            job_args=job_args,
        )
        try:
            (reply,) = await rawredis.send(self.redis, [command])
        except NoScriptError:  # the script cache was flushed since this connection began
            await START.load_into(self.redis)
            (reply,) = await rawredis.send(self.redis, [command])
        canceled = {int(i) for i in reply or ()}
        return [position in canceled for position in range(1, len(jobs) + 1)]

    async def renew(self, entries: Iterable[Entry]) -> list[tuple[str, str]]:
        """Reset the idle time of entries we own; the (stream, id) of those we lost."""
        lost: list[tuple[str, str]] = []
        for stream, ids in by_stream(entries).items():
            reply = await RENEW(
                self.redis, stream=stream, group=self.group, consumer=self.consumer, ids=ids
            )
            lost.extend((stream, text(eid)) for eid in reply or ())
        return lost

    async def hand_back_all(self, streams: Iterable[str]) -> int:
        """Make every entry pending for this consumer on ``streams`` claimable by other
        workers at once (they stay unacknowledged)."""
        handed = 0
        for stream in streams:
            after = "-"
            while True:
                mine = await self.redis.xpending_range(
                    stream, self.group, min=after, max="+", count=_PAGE, consumername=self.consumer
                )
                ids = [text(p["message_id"]) for p in mine]
                if not ids:
                    break
                after = f"({ids[-1]}"
                handed += int(
                    await HAND_BACK(
                        self.redis,
                        stream=stream,
                        group=self.group,
                        consumer=self.consumer,
                        idle_ms=HANDED_BACK_IDLE_MS,
                        ids=ids,
                    )
                )
                if len(ids) < _PAGE:
                    break
        return handed


class LeaseKeeper:
    """Renews the leases of running attempts; stops an attempt whose lease another
    worker took over (it will run there as a new attempt)."""

    def __init__(
        self,
        leases: Leases,
        attempts: Callable[[], Collection[Attempt]],
        every: float,
        *,
        log: Any,
        monotonic: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.leases = leases
        self.attempts = attempts
        self.every = every
        self.log = log
        self.monotonic = monotonic

    async def run(self, stop: asyncio.Event) -> None:
        await periodically(self.renew, every=self.every, stop=stop, what="leases", log=self.log)

    async def renew(self) -> None:
        cutoff = self.monotonic() - self.every / 2  # younger ones were just delivered
        held = {a.key: a for a in self.attempts() if not a.recording and a.clock < cutoff}
        if not held:
            return
        for key in await self.leases.renew(a.entry for a in held.values()):
            attempt = held.get(key)
            if attempt is not None and not attempt.recording:
                self.log.warning("lease_lost", job_id=attempt.job.job_id, attempt=attempt.attempt)
                attempt.stop("lease_lost")
