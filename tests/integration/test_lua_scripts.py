"""Scripts run by EVALSHA: loaded on every new connection, so a transaction never meets
NOSCRIPT after Redis lost its script cache (a restart, a failover, SCRIPT FLUSH)."""

from __future__ import annotations

import redis.asyncio as aioredis
from hookline.lua import Script
from hookline.redis_client import connect

INCR_BY = Script(
    "test:incr_by",
    "-- Add to a counter.\n-- KEYS: counter\n-- ARGV: amount\n"
    "return redis.call('INCRBY', KEYS[1], ARGV[1])\n",
)


async def test_a_new_connection_has_every_script_loaded_for_transactions(
    redis_url: str, redis: aioredis.Redis, prefix: str
) -> None:
    await redis.script_flush()  # the cache a restarted Redis starts with
    client = connect(redis_url, client_name="test")
    try:
        async with client.pipeline(transaction=True) as tx:
            tx.execute_command(*INCR_BY.command(counter=f"{prefix}:n", amount=2))
            tx.set(f"{prefix}:after", 1)
            replies = await tx.execute(raise_on_error=False)
        assert replies == [2, True]
    finally:
        await client.aclose()


async def test_a_call_outside_a_transaction_loads_the_script_when_missing(
    redis_url: str, prefix: str
) -> None:
    client = connect(redis_url, client_name="test")
    try:
        await client.ping()
        await client.script_flush()  # on this very connection, after it was made
        assert await INCR_BY(client, counter=f"{prefix}:m", amount=3) == 3
    finally:
        await client.aclose()
