"""Redis connections: one way to connect, and the errors that mean "unreachable"."""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.connection import Connection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hookline.lua import load_on_connect

# Errors that mean "Redis is not reachable right now": back off and try again.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

Redis = aioredis.Redis


def connect(url: str, *, client_name: str, socket_timeout: float | None = None) -> Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs, bytes in and out."""
    tcp: dict[str, Any] = {} if url.startswith("unix://") else {"socket_keepalive": True}
    client: Redis = aioredis.Redis.from_url(
        url,
        decode_responses=False,
        client_name=client_name,
        socket_connect_timeout=5,
        socket_timeout=socket_timeout,
        health_check_interval=15,
        # Every Lua script is loaded as a connection is made, so EVALSHA inside a
        # transaction never meets an empty script cache (a restarted Redis).
        redis_connect_func=load_on_connect,
        **tcp,
    )
    return client


def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` (as redis-py would only find out when connecting), or
    None: a bad port or db, or a ``?option`` no connection of its kind accepts."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return "must start with redis://, rediss:// or unix://"
    try:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return str(exc)
    database = urlsplit(url).path.strip("/")
    if not url.startswith("unix://") and database and not database.isdigit():
        return f"the database must be a number, not {database!r}"  # redis-py would use 0
    kind = options.pop("connection_class", Connection)
    accepted = {
        name
        for klass in kind.__mro__
        if "__init__" in vars(klass)
        for name in inspect.signature(klass.__init__).parameters
    }
    unknown = sorted(set(options) - accepted)
    return f"unknown option(s) {', '.join(unknown)}" if unknown else None
