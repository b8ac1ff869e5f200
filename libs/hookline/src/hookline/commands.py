"""Operator commands: append one to the ``commands`` stream and wait for its answer.

The CLI and the status service's admin endpoints only append commands; the dispatcher
carries them out and pushes a :class:`CommandAnswer` to ``keys.command_answer(id)``.
"""

from __future__ import annotations

from hookline.events import Command, CommandAnswer, decode_answer, encode
from hookline.keys import EVENT_FIELD, Keys
from hookline.redis_client import Redis


async def send_command(
    redis: Redis, keys: Keys, command: Command, timeout: float = 10.0
) -> CommandAnswer | None:
    """Append ``command``; the dispatcher's answer, or None if none came in ``timeout``
    seconds (the command stays in the stream and is still carried out later)."""
    await redis.xadd(keys.commands, {EVENT_FIELD: encode(command)})
    reply = await redis.blpop([keys.command_answer(command.event_id)], timeout=timeout)
    if reply is None:
        return None
    data = reply[1]
    return decode_answer(data if isinstance(data, bytes) else str(data).encode())
