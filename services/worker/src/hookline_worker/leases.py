"""A running job's lease is its pending entry: the worker renews it, others take it over
once it lapses, and a stopping worker hands it back for immediate takeover.

An entry's idle time (time since its last delivery or claim) is the lease clock. The
owner resets it with ``XCLAIM ... 0 <id> JUSTID`` (which does not count a delivery);
a live worker claims entries idle longer than the lease timeout; a worker that stops
without finishing a job sets the entry's idle time far past any lease timeout.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hookline.redis_client import Redis
from hookline.streams import Entry

from hookline_worker.rawredis import Script

# Far past any lease timeout, yet below the current time in ms (Redis would clamp a
# larger idle time to zero).
HANDED_BACK_IDLE_MS = 10**10

# Renew the leases we still own; return the ids another consumer has taken over (or
# that are no longer pending at all), so their runs can stop.
#   KEYS[1] stream  ARGV[1] group  ARGV[2] consumer  ARGV[3..] entry ids
RENEW = """
local lost = {}
for i = 3, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #mine == 0 then
    lost[#lost + 1] = ARGV[i]
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  end
end
return lost
"""

# Hand back the entries we still own: idle far past any lease, so the next claim pass
# of any live worker takes them (the delivery count is left as it is).
#   KEYS[1] stream  ARGV[1] group  ARGV[2] consumer  ARGV[3] idle ms  ARGV[4..] entry ids
HAND_BACK = """
local n = 0
for i = 4, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #mine > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
"""

# Start a batch in one step: per job, if its cancel marker covers the queued attempt,
# acknowledge the entry and write nothing (the canceller recorded the outcome); else
# append its job.started. Returns the 1-based positions of the canceled jobs.
#   KEYS[1] job.started  KEYS[2i] cancel marker of job i  KEYS[2i+1] its queue stream
#   ARGV[1] group  ARGV[2] event field  ARGV[3i..3i+2] queued attempt, entry id, event
START = """
local canceled = {}
for i = 1, (#KEYS - 1) / 2 do
  local marker = tonumber(redis.call('GET', KEYS[2 * i]) or '')
  if marker and marker >= tonumber(ARGV[3 * i]) then
    redis.call('XACK', KEYS[2 * i + 1], ARGV[1], ARGV[3 * i + 1])
    canceled[#canceled + 1] = i
  else
    redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3 * i + 2])
  end
end
return canceled
"""


def by_stream(entries: Iterable[Entry]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for entry in entries:
        grouped.setdefault(entry.stream, []).append(entry.entry_id)
    return grouped


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Leases:
    def __init__(self, redis: Redis, group: str, consumer: str) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self._renew = redis.register_script(RENEW)
        self._hand_back = redis.register_script(HAND_BACK)
        self._start = Script(START)

    async def start(self, keys: list[Any], args: list[Any]) -> list[int]:
        """Run START (see above); the 1-based positions of canceled jobs."""
        return [int(i) for i in await self._start(self.redis, keys, args) or ()]

    async def renew(self, entries: Iterable[Entry]) -> list[tuple[str, str]]:
        """Reset the idle time of entries we own; the (stream, id) of those we lost."""
        lost: list[tuple[str, str]] = []
        for stream, ids in by_stream(entries).items():
            reply = await self._renew(keys=[stream], args=[self.group, self.consumer, *ids])
            lost.extend((stream, _s(eid)) for eid in reply or ())
        return lost

    async def hand_back(self, entries: Iterable[Entry]) -> int:
        """Make entries we will not finish claimable by other workers at once (they stay
        unacknowledged; only entries still pending for us are touched)."""
        handed = 0
        for stream, ids in by_stream(entries).items():
            args: list[str | int] = [self.group, self.consumer, HANDED_BACK_IDLE_MS, *ids]
            handed += int(await self._hand_back(keys=[stream], args=args))
        return handed

    async def hand_back_all(self, streams: Iterable[str]) -> int:
        """Hand back every entry pending for this consumer on ``streams``."""
        handed = 0
        for stream in streams:
            after = "-"
            while True:
                mine = await self.redis.xpending_range(
                    stream, self.group, min=after, max="+", count=1000, consumername=self.consumer
                )
                ids = [_s(p["message_id"]) for p in mine]
                if not ids:
                    break
                after = f"({ids[-1]}"
                args: list[str | int] = [self.group, self.consumer, HANDED_BACK_IDLE_MS, *ids]
                handed += int(await self._hand_back(keys=[stream], args=args))
                if len(ids) < 1000:
                    break
        return handed
