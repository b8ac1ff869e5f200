"""Reading the job views: one job, a job's history, a page of a listing, counts.

The status HTTP API and the ``hookline`` operator commands both read through these, so
they always show the same thing. Documents are handed on as the apply script rendered
them (bytes of a :class:`~hookline_status.documents.JobView`), never re-rendered here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec
from hookline.clock import now_ms
from hookline.keys import Keys
from hookline.lua import Script
from hookline.redis_client import Redis
from hookline.text import text

from hookline_status.documents import STATUSES, JobEvent
from hookline_status.query import Cursor, JobQuery
from hookline_status.view_keys import PARTS, current_views

GET_JOB = Script.load("hookline_status", "get_job")
LIST_JOBS = Script.load("hookline_status", "list_jobs")
COUNT_JOBS = Script.load("hookline_status", "count_jobs")

# Most index entries one listing request (or due views one count) looks at.
SCAN_BUDGET: Final = 5000

_decoder = msgspec.json.Decoder()
_events = msgspec.json.Decoder(JobEvent)


async def get_job_document(redis: Redis, keys: Keys, job_id: str) -> bytes | None:
    """One job's view as the API's JSON document (None if unknown or expired)."""
    document: bytes | None = await GET_JOB(
        redis,
        generation=keys.views_generation,
        views_root=keys.views_root,
        job_part=PARTS.job(job_id),
        now_ms=now_ms(),
    )
    return document


async def get_job(redis: Redis, keys: Keys, job_id: str) -> dict[str, Any] | None:
    document = await get_job_document(redis, keys, job_id)
    return _decoder.decode(document) if document is not None else None


async def read_view(redis: Redis, keys: Keys, job_id: str) -> dict[str, str] | None:
    """The stored fields of one job's view, or None if unknown or expired."""
    views = await current_views(redis, keys)
    raw: Any = await redis.hgetall(views.job(job_id))
    view = {text(k): text(v) for k, v in raw.items()}
    expires = view.get("expires_ms")
    return None if not view or (expires and int(expires) <= now_ms()) else view


async def job_history(redis: Redis, keys: Keys, job_id: str) -> list[JobEvent] | None:
    """Every event recorded for a job, oldest first (None if the job is unknown)."""
    views = await current_views(redis, keys)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(views.job(job_id), "expires_ms")
        pipe.exists(views.job(job_id))
        pipe.zrange(views.job_events(job_id), 0, -1)
        expires, exists, members = await pipe.execute()
    if not exists or (expires and int(expires) <= now_ms()):
        return None
    return [_events.decode(m) for m in members]


@dataclass(frozen=True, slots=True)
class RawPage:
    """A page of jobs as JSON documents, ready to join into a reply."""

    documents: list[bytes]
    next_cursor: str | None


async def list_job_documents(redis: Redis, keys: Keys, query: JobQuery) -> RawPage:
    """Newest first, ``query.limit`` at most, from ``query.cursor`` on; one round trip."""
    filters = query.filters
    first = filters[0] if filters else ("", "")
    reply = await LIST_JOBS(
        redis,
        generation=keys.views_generation,
        views_root=keys.views_root,
        index_part=PARTS.index(query.status, *first),
        job_part=PARTS.job(""),
        max_score="+inf" if query.cursor is None else str(query.cursor.score),
        after_id="" if query.cursor is None else query.cursor.job_id,
        limit=query.limit,
        now_ms=now_ms(),
        budget=SCAN_BUDGET,
        filters=[part for pair in filters[1:] for part in pair],
    )
    *found, last_score, last_id, exhausted = reply
    documents: list[bytes] = found[0::3]
    cursors = [
        Cursor(int(float(score)), text(job_id))
        for score, job_id in zip(found[1::3], found[2::3], strict=True)
    ]
    if len(documents) > query.limit:
        documents = documents[: query.limit]
        next_cursor: str | None = cursors[query.limit - 1].encode()
    elif not int(exhausted) and last_id:
        # the budget ran out before the page filled: more may match further on
        next_cursor = Cursor(int(float(last_score)), text(last_id)).encode()
    else:
        next_cursor = None
    return RawPage(documents, next_cursor)


async def count_jobs(
    redis: Redis, keys: Keys, queues: list[str] | None = None
) -> dict[tuple[str, str], int]:
    """Live jobs per ``(status, queue)``; queue ``""`` is every queue together."""
    wanted = [(s, "") for s in STATUSES]
    wanted += [(s, q) for q in queues or [] for s in STATUSES]
    counts = await COUNT_JOBS(
        redis,
        generation=keys.views_generation,
        views_root=keys.views_root,
        expiring_part=PARTS.expiring,
        job_part=PARTS.job(""),
        now_ms=now_ms(),
        budget=SCAN_BUDGET,
        index_parts=[PARTS.index(s, "queue", q) if q else PARTS.index(s) for s, q in wanted],
    )
    return {key: int(n) for key, n in zip(wanted, counts, strict=True)}
