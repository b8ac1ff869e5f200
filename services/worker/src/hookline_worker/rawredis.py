"""The worker's two hot round trips, packed by hiredis instead of redis-py.

Profiling the worker stage showed redis-py's pure-Python command packing as the
largest cost per job (about a third of the worker's CPU): every job adds ~10 command
arguments between its ``job.started`` and its ``job.finished`` + XACK. hiredis (already
a dependency) packs them in C; the whole transaction goes out in one write on one
pooled connection and the replies are read back in order. Scripts sent this way are
``hookline.lua.Script.command()`` EVALSHAs (loaded as each connection is made).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
from hookline.lua import ensure_loaded
from hookline.redis_client import Redis
from hookline.streams import Acks, Op
from redis.exceptions import ResponseError

_pack = hiredis.pack_command


async def send(redis: Redis, commands: Sequence[Op]) -> list[Any]:
    """Send ``commands`` in one write and read their replies (an error reply raises)."""
    payload = b"".join([_pack(command) for command in commands])
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(payload, check_health=False)
        replies = []
        failure: ResponseError | None = None
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:  # read the other replies: the connection stays usable
                failure = failure or exc
                replies.append(exc)
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)
    if failure is not None:
        raise failure
    return replies


async def commit(redis: Redis, ops: Sequence[Op], acks: Acks | None = None) -> list[Any]:
    """:func:`hookline.consumer.commit` (ops + XACK in one MULTI/EXEC), packed by hiredis."""
    commands: list[Op] = [("MULTI",), *ops]
    for stream, ids in (acks or {}).items():
        if ids:
            commands.append(("XACK", stream, acks.group, *ids))  # type: ignore[union-attr]
    if len(commands) == 1:
        return []
    await ensure_loaded(redis, ops)
    commands.append(("EXEC",))
    replies = await send(redis, commands)
    results = replies[-1]
    if results is None:
        raise ResponseError("transaction aborted")
    for result in results:
        if isinstance(result, ResponseError):
            raise result
    return list(results[: len(ops)])
