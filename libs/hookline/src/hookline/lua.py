"""Lua scripts as files: one way to run them.

Each script is ``<package>/lua/<name>.lua`` and opens with a header naming its keys and
arguments, in order::

    -- Append to a stream at most once per marker key.
    -- KEYS: marker, stream
    -- ARGV: value, ttl_ms, field, data
    -- ARGV*: rest        (optional: a variadic tail, passed as a sequence)
    -- KEYS*: more        (optional: a variadic tail of keys, after the named ones)

A :class:`Script` is called with keyword arguments of those names, never a positional
list. It runs by EVALSHA. Scripts are loaded once per connection, as the connection is
made (:func:`load_on_connect`), so a Redis that restarted or failed over (its script
cache empty) never answers NOSCRIPT inside a transaction, where the other commands
would still run; a call outside a transaction also loads and retries on NOSCRIPT.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError

# A Redis command to run inside a commit transaction, e.g. ("XADD", stream, "*", ...).
Op = tuple[Any, ...]

_HEADER = re.compile(r"^--\s*(KEYS|ARGV)(\*?)\s*:\s*(.*?)\s*$")
_REGISTRY: dict[str, Script] = {}


class ScriptError(ValueError):
    """A script file without a proper header, or a call with the wrong arguments."""


class Script:
    """One Lua script, run by EVALSHA with keyword arguments named by its header."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.keys, self.argv, self.tail, self.keys_tail = _parse_header(name, source)
        _REGISTRY[self.sha] = self

    @classmethod
    def load(cls, package: str, name: str) -> Script:
        """``<package>/lua/<name>.lua``."""
        source = resources.files(package).joinpath("lua", f"{name}.lua").read_text("utf-8")
        return cls(f"{package}:{name}", source)

    def command(self, **values: Any) -> Op:
        """The EVALSHA command for these arguments (for a pipeline or a transaction)."""
        tails = [t for t in (self.tail, self.keys_tail) if t]
        expected = {*self.keys, *self.argv, *tails}
        if set(values) != expected:
            missing = sorted(expected - set(values))
            extra = sorted(set(values) - expected)
            raise ScriptError(f"{self.name}: missing {missing}, unexpected {extra}")
        keys = [values[k] for k in self.keys]
        if self.keys_tail:
            keys.extend(values[self.keys_tail])
        argv = [values[a] for a in self.argv]
        if self.tail:
            tail: Sequence[Any] = values[self.tail]
            argv.extend(tail)
        return ("EVALSHA", self.sha, len(keys), *keys, *argv)

    async def __call__(self, redis: Any, **values: Any) -> Any:
        """Run it on its own (not in a transaction); loads it if Redis does not have it."""
        command = self.command(**values)
        try:
            return await redis.execute_command(*command)
        except NoScriptError:
            await self.load_into(redis)
            return await redis.execute_command(*command)

    async def load_into(self, redis: Any) -> None:
        """SCRIPT LOAD it (after a NOSCRIPT outside a transaction: run the call again)."""
        await redis.script_load(self.source)


async def ensure_loaded(redis: Any, ops: Sequence[Op]) -> None:
    """Before a transaction: load every script its EVALSHA ops name that Redis lacks.

    Redis runs every queued command of a MULTI even when one fails, so an EVALSHA meeting
    an empty script cache there would lose its write while the XACK beside it lands.
    Connections load every script as they are made, but a ``SCRIPT FLUSH`` on a live
    server, or a script defined after the connection was made, would still get there:
    one SCRIPT EXISTS per such transaction closes that (the script cache is server-wide).
    """
    shas = list(dict.fromkeys(op[1] for op in ops if op and op[0] == "EVALSHA"))
    if not shas:
        return
    present = await redis.script_exists(*shas)
    for sha, loaded in zip(shas, present, strict=True):
        if not loaded:
            await _REGISTRY[sha].load_into(redis)


def _parse_header(
    name: str, source: str
) -> tuple[tuple[str, ...], tuple[str, ...], str | None, str | None]:
    found: dict[str, list[str]] = {"KEYS": [], "ARGV": [], "ARGV*": [], "KEYS*": []}
    seen_keys = False
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        match = _HEADER.match(line)
        if match is None:
            continue
        kind, star, names = match.groups()
        seen_keys = seen_keys or kind == "KEYS"
        found[kind + star].extend(n.strip() for n in names.split(",") if n.strip())
    if not seen_keys:
        raise ScriptError(f"{name}: the header names no KEYS (a '-- KEYS: a, b' line)")
    tail, keys_tail = found["ARGV*"], found["KEYS*"]
    if len(tail) > 1 or len(keys_tail) > 1:
        raise ScriptError(f"{name}: at most one variadic ARGV* and one KEYS* name")
    names = [*found["KEYS"], *found["ARGV"], *tail, *keys_tail]
    if len(set(names)) != len(names):
        raise ScriptError(f"{name}: a name appears twice in the header")
    return (
        tuple(found["KEYS"]),
        tuple(found["ARGV"]),
        (tail[0] if tail else None),
        (keys_tail[0] if keys_tail else None),
    )


async def load_on_connect(connection: AbstractConnection) -> None:
    """A ``redis_connect_func``: the usual handshake, then every known script is loaded
    (one round trip), so EVALSHA never meets an empty script cache on this connection."""
    await connection.on_connect()
    scripts = list(_REGISTRY.values())
    if not scripts:
        return
    for script in scripts:
        await connection.send_command("SCRIPT", "LOAD", script.source)
    for _ in scripts:
        await connection.read_response()
