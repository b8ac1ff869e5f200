"""Job views made the way the status service makes them: events projected, then applied
by its real Lua script in Redis (in the order given)."""

from __future__ import annotations

from collections.abc import Iterable

from hookline.events import AnyEvent
from hookline.keys import Keys
from hookline.redis_client import Redis
from hookline_status.projection import project
from hookline_status.store import Stored, apply_updates, snapshot
from hookline_status.view_keys import view_keys


async def project_into(
    redis: Redis,
    keys: Keys,
    events: Iterable[AnyEvent],
    generation: int = 0,
    *,
    per_call: int = 500,
    guard: bool = True,
) -> list[int]:
    """Apply ``events`` to ``generation``, ``per_call`` updates per script call; 1 per
    update applied, 0 per update ignored."""
    updates = [u for e in events if (u := project(e)) is not None]
    results: list[int] = []
    for start in range(0, len(updates), per_call):
        chunk = updates[start : start + per_call]
        results += await apply_updates(redis, keys, generation, chunk, guard=guard)
    return results


async def fold(redis: Redis, keys: Keys, events: Iterable[AnyEvent], generation: int) -> Stored:
    """Everything ``events`` make of an empty ``generation``, applied in order."""
    await project_into(redis, keys, events, generation, guard=False)
    return await snapshot(redis, view_keys(keys, generation))
