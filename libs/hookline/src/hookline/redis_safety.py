"""Is this Redis safe to hold jobs? Persistence on and no eviction, checked at start and
periodically; the verdict is the flag every service consults before it appends or consumes.

Safe means: AOF on (or RDB save points, with a warning: a crash loses what came after
the last snapshot), ``maxmemory-policy noeviction``, and no failing AOF writes. It is
read from ``INFO persistence`` and ``INFO memory`` (allowed where managed services refuse
``CONFIG``); ``CONFIG GET save`` is asked only when AOF is off. What cannot be verified
is not safe. ``HOOKLINE_ALLOW_UNSAFE_REDIS=1`` lets the services run anyway, loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import ResponseError

from hookline import clock
from hookline.logs import get_logger
from hookline.metrics import CollectorRegistry, Gauge
from hookline.redis_client import UNAVAILABLE, Redis
from hookline.retry import Health, sleep_unless
from hookline.text import text

Persistence = Literal["aof", "rdb", "none", "unknown"]

SETTING = "HOOKLINE_ALLOW_UNSAFE_REDIS"
# Each probe (and so each /health, /readyz) waits this long at most for Redis.
PROBE_DEADLINE = 0.5
# Re-checked this often while Redis answers (two cheap INFO sections: a Redis switched
# to an evicting policy gets at most a second of writes); much sooner while it does
# not answer, so a restarted Redis is verified (or refused) a moment after it is back.
CHECK_EVERY = 1.0
RECHECK_UNREACHABLE = 0.25


@dataclass(frozen=True, slots=True)
class Observed:
    """What Redis said about itself; None where the command was refused."""

    aof_enabled: bool | None
    aof_write_ok: bool | None
    save: str | None
    policy: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    safe: bool
    persistence: Persistence
    eviction: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def persistence_of(observed: Observed) -> Persistence:
    if observed.aof_enabled:
        return "aof"
    if observed.aof_enabled is None or observed.save is None:
        return "unknown"
    return "rdb" if observed.save.strip() else "none"


_PERSISTENCE_PROBLEM: dict[Persistence, str] = {
    "none": "persistence is off (appendonly no and no save points): a Redis restart "
    "loses every job; set appendonly yes",
    "unknown": "cannot verify persistence: INFO persistence or CONFIG GET save is refused "
    "and AOF is not reported on; allow INFO for this user or turn on appendonly",
}


def assess(observed: Observed) -> Verdict:
    """The pure rule: what makes a Redis unsafe for hookline, in the operator's words."""
    persistence = persistence_of(observed)
    problems: list[str] = []
    warnings: list[str] = []
    if persistence in _PERSISTENCE_PROBLEM:
        problems.append(_PERSISTENCE_PROBLEM[persistence])
    elif persistence == "rdb":
        warnings.append(
            "RDB snapshots only: a Redis crash loses what came after the last snapshot; "
            "appendonly yes is recommended"
        )
    if observed.aof_write_ok is False:
        problems.append("Redis reports failing AOF writes (aof_last_write_status err)")
    policy = observed.policy or "unknown"
    if policy == "unknown":
        problems.append("cannot verify the eviction policy: INFO memory is refused")
    elif policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: Redis may evict streams and job records (lost "
            "jobs); set maxmemory-policy noeviction"
        )
    return Verdict(not problems, persistence, policy, tuple(problems), tuple(warnings))


def _field(section: Any, name: str) -> Any:
    return section.get(name) if isinstance(section, Mapping) else None


async def observe(redis: Redis) -> Observed:
    """One round trip (two when AOF is off). Raises the ``UNAVAILABLE`` errors."""
    pipe = redis.pipeline(transaction=False)
    pipe.info("persistence")
    pipe.info("memory")
    persistence, memory = await pipe.execute(raise_on_error=False)
    for reply in (persistence, memory):
        if isinstance(reply, UNAVAILABLE):
            raise reply
    aof = _field(persistence, "aof_enabled")
    write_status = _field(persistence, "aof_last_write_status")
    policy = _field(memory, "maxmemory_policy")
    save: str | None = None
    if aof is not None and not int(aof):
        with contextlib.suppress(ResponseError):
            reply = await redis.config_get("save")
            values = {text(k): text(v) for k, v in reply.items()}
            save = values.get("save")
    return Observed(
        aof_enabled=None if aof is None else bool(int(aof)),
        aof_write_ok=None if write_status is None else text(write_status) == "ok",
        save=save,
        policy=None if policy is None else text(policy),
    )


class RedisSafety:
    """The latest verdict on one Redis, kept fresh; ``hold()`` says why not to use it."""

    def __init__(
        self,
        redis: Redis,
        *,
        allow_unsafe: bool = False,
        registry: CollectorRegistry | None = None,
        deadline: float = PROBE_DEADLINE,
        every: float = CHECK_EVERY,
    ) -> None:
        self.redis = redis
        self.allow_unsafe = allow_unsafe
        self.deadline = deadline
        self.every = every
        self.verdict: Verdict | None = None
        self.error: str | None = None  # why the last probe got no answer
        self.checked_at: float | None = None
        self._watching = False
        self._log = get_logger(component="redis_safety")
        self._safe_gauge = (
            Gauge(
                "hookline_redis_safe",
                "1 while Redis is verified safe for jobs (persistence on, noeviction), "
                "0 while it is not or cannot be verified.",
                registry=registry,
            )
            if registry is not None
            else None
        )
        if self._safe_gauge is not None:
            self._safe_gauge.set(0)

    @property
    def reachable(self) -> bool:
        return self.error is None and self.verdict is not None

    def hold(self) -> str | None:
        """None while jobs may be written and consumed; else the reason they may not."""
        if self.verdict is not None and self.verdict.safe:
            return None
        if self.allow_unsafe:
            return None
        if self.verdict is None:
            return f"Redis is not verified safe yet: {self.error or 'no answer so far'}"
        return "unsafe Redis: " + "; ".join(self.verdict.problems)

    def problems(self) -> list[str]:
        """Everything wrong, for ``/health`` and ``/readyz``."""
        found = [f"Redis unreachable: {self.error}"] if self.error else []
        if self.verdict is not None:
            found.extend(self.verdict.problems)
        elif not self.error:
            found.append("Redis not checked yet")
        return found

    def report(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "safe": verdict.safe if verdict else None,
            "persistence": verdict.persistence if verdict else "unknown",
            "eviction_policy": verdict.eviction if verdict else "unknown",
            "problems": list(verdict.problems) if verdict else [],
            "warnings": list(verdict.warnings) if verdict else [],
            "unsafe_allowed": self.allow_unsafe,
            "error": self.error,
            "checked_seconds_ago": (
                None if self.checked_at is None else round(clock.monotonic() - self.checked_at, 1)
            ),
        }

    def health_fields(self) -> dict[str, Any]:
        """What every ``/health`` adds: the verdict and every problem, in words."""
        return {"redis_safety": self.report(), "problems": self.problems()}

    async def readiness(self, loop: Health | None = None) -> dict[str, Any]:
        """``/readyz``: Redis answers now (within the deadline) and is safe (or allowed),
        and the service's loop is running against it."""
        await self.check()
        problems = self.problems() if not self.reachable or self.hold() else []
        if loop is not None and not problems and not loop.redis_ok:
            problems.append(f"consumer not running: {loop.last_error or 'starting'}")
        return {"ready": not problems, "problems": problems, "unsafe_allowed": self.allow_unsafe}

    async def check(self) -> Verdict | None:
        """Probe Redis within the deadline; the verdict, or None when it did not answer
        (the last verdict stands: a Redis that is away takes no writes anyway)."""
        try:
            async with asyncio.timeout(self.deadline):
                observed = await observe(self.redis)
        except (*UNAVAILABLE, TimeoutError) as exc:
            self.error = _describe(exc, self.deadline)
            return None
        self.error = None
        self.checked_at = clock.monotonic()
        self._set(assess(observed))
        return self.verdict

    def _set(self, verdict: Verdict) -> None:
        before, self.verdict = self.verdict, verdict
        if self._safe_gauge is not None:
            self._safe_gauge.set(1 if verdict.safe else 0)
        if before == verdict:
            return
        if verdict.safe:
            level = self._log.warning if verdict.warnings else self._log.info
            level("redis_safe", persistence=verdict.persistence, warnings=list(verdict.warnings))
        elif self.allow_unsafe:
            self._log.error(
                "redis_unsafe_allowed",
                problems=list(verdict.problems),
                warning=f"{SETTING}=1: running on a Redis that may lose jobs",
            )
        else:
            self._log.error(
                "redis_unsafe",
                problems=list(verdict.problems),
                effect="the ingress spools webhooks and consumers pause until this is fixed",
                hint=f"fix the Redis settings, or set {SETTING}=1 to run anyway",
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Re-check every ``every`` seconds (sooner while Redis does not answer). Returns
        at once when the checks already run (the app's lifespan and a service's loop may
        both ask for them: a loop that consults ``hold`` must never wait on nobody)."""
        if self._watching:
            return
        self._watching = True
        try:
            while not stop.is_set():
                verdict = await self.check()
                pause = self.every if verdict is not None else RECHECK_UNREACHABLE
                await sleep_unless(stop, pause)
        finally:
            self._watching = False


async def checked(safety: RedisSafety, work: Awaitable[object]) -> None:
    """Run a service's loop with the safety checks beside it (they end with it), so a loop
    held by ``safety.hold`` is released once Redis is fixed, whoever started it."""
    done = asyncio.Event()
    checks = asyncio.create_task(safety.run(done), name="redis-safety-beside")
    try:
        await work
    finally:
        done.set()
        await checks


def _describe(exc: BaseException, deadline: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {deadline:g}s"
    return f"{type(exc).__name__}: {exc}"


def lifespan(safety: RedisSafety) -> Callable[[object], AsyncIterator[None]]:
    """An aiohttp ``cleanup_ctx`` for a service's Redis client: one check at start (within
    the probe deadline: a Redis that is away or frozen never holds the start), the
    periodic checks while the app serves, and the client closed at the end."""

    async def ctx(_: object) -> AsyncIterator[None]:
        if safety.allow_unsafe:
            get_logger().warning(
                "redis_unsafe_allowed_by_setting",
                warning=f"{SETTING}=1: Redis persistence and eviction are not enforced",
            )
        await safety.check()
        stop = asyncio.Event()
        task = asyncio.create_task(safety.run(stop), name="redis-safety")
        yield
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await safety.redis.aclose()

    return ctx
