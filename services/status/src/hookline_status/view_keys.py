"""Keys of the job views the status service keeps: one generation of them at a time.

A rebuild writes a fresh generation and then points ``Keys.views_generation`` at it;
readers and the live projection always use the generation it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hookline.keys import Keys
from hookline.redis_client import Redis

# The tail of a dimension index's name after its status: ``:queue=video``. printf-style,
# so that Python and the apply script (Lua's string.format) use this one definition.
INDEX_TAIL = ":%s=%s"


@dataclass(frozen=True, slots=True)
class ViewKeys:
    """Keys of one generation of the status projection, e.g. ``{hookline}:g3:job:<id>``.

    ``ViewKeys("")`` gives each key's own part, for scripts that add root + generation."""

    base: str

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key of this generation."""
        return self.base + ":*"

    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"

    def job_events(self, job_id: str) -> str:
        """Sorted set of one job's event summaries, scored by when they happened (ms)."""
        return f"{self.base}:events:{job_id}"

    @property
    def index_prefix(self) -> str:
        return f"{self.base}:jobs:"

    def index(self, status: str, dimension: str = "", value: str = "") -> str:
        """Sorted set of job ids by creation time: all jobs with ``status`` (or ``all``),
        optionally only those whose ``dimension`` (queue, pipeline, repository) is
        ``value``. The apply script names the indexes a view joins with the same
        ``INDEX_TAIL`` (it is passed to it), so the format exists once."""
        tail = INDEX_TAIL % (dimension, value) if dimension else ""
        return f"{self.index_prefix}{status}{tail}"

    @property
    def expiring(self) -> str:
        """Sorted set of ended job ids, scored by when their view expires (ms)."""
        return f"{self.base}:expiring"

    @property
    def metric_completed(self) -> str:
        """Hash ``queue\tpipeline\toutcome`` -> attempts ended, counted once per event."""
        return f"{self.base}:metrics:completed"

    @property
    def metric_duration(self) -> str:
        """Hash of the run-time histogram: ``queue\tpipeline\t<bucket|sum|count>``."""
        return f"{self.base}:metrics:duration"

    @property
    def metric_wait(self) -> str:
        """Hash of the queued-to-started histogram: ``queue\t<bucket|sum|count>``."""
        return f"{self.base}:metrics:wait"


# Each key's own part, without root and generation.
PARTS: Final = ViewKeys("")


def view_keys(keys: Keys, generation: int) -> ViewKeys:
    """The projection's keys of one generation: ``views_root`` + generation + own part."""
    return ViewKeys(f"{keys.views_root}{generation}")


async def generation(redis: Redis, keys: Keys) -> int:
    raw = await redis.get(keys.views_generation)
    return int(raw) if raw else 0


async def current_views(redis: Redis, keys: Keys) -> ViewKeys:
    """The keys of the generation readers use now (a rebuild switches it atomically)."""
    return view_keys(keys, await generation(redis, keys))
