"""``GET /jobs`` and ``hookline jobs`` parameters: what a listing may ask for, checked.

Pure: a mapping of parameters in, a :class:`JobQuery` or a :class:`QueryError` naming
the bad parameter out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from hookline_status.documents import LIST_STATUSES, ListStatus

# View fields with a listing index of their own (``GET /jobs?queue=...``).
DIMENSIONS: Final = ("queue", "pipeline", "repository")
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
MAX_FILTER_LENGTH: Final = 200


class QueryError(ValueError):
    """A bad listing parameter; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


CURSOR_PATTERN: Final = r"^[0-9]{1,16}:.+$"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last job's creation time (ms) and id, as ``<ms>:<id>``.

    Any text of that shape is a valid position (the next page starts after it)."""

    score: int
    job_id: str

    def encode(self) -> str:
        return f"{self.score}:{self.job_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        score, _, job_id = text.partition(":")
        if not job_id or not score.isascii() or not score.isdigit() or len(score) > 16:
            raise QueryError(
                "cursor", f"cursor must be a next_cursor this API handed out; got {text!r}"
            )
        return cls(int(score), job_id)


@dataclass(frozen=True, slots=True)
class JobQuery:
    status: ListStatus = "all"
    limit: int = DEFAULT_LIMIT
    # (dimension, value) pairs, dimensions of DIMENSIONS, in its order.
    filters: tuple[tuple[str, str], ...] = ()
    cursor: Cursor | None = None


QUERY_PARAMETERS: Final = frozenset({"status", "limit", "cursor", *DIMENSIONS})


def parse_job_query(query: Mapping[str, str]) -> JobQuery:
    """Validate ``GET /jobs`` parameters; :class:`QueryError` names the bad one."""
    unknown = sorted(set(query) - QUERY_PARAMETERS)
    if unknown:
        allowed = ", ".join(sorted(QUERY_PARAMETERS))
        raise QueryError(unknown[0], f"unknown parameter {unknown[0]!r}; use {allowed}")
    status = query.get("status", "all")
    if status not in LIST_STATUSES:
        raise QueryError(
            "status", f"status must be one of {', '.join(LIST_STATUSES)}; got {status!r}"
        )
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    bad_limit = f"limit must be a whole number from 1 to {MAX_LIMIT}; got {raw_limit!r}"
    if not raw_limit.isascii() or not raw_limit.isdigit():
        raise QueryError("limit", bad_limit)
    limit = int(raw_limit)
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError("limit", bad_limit)
    filters: dict[str, str] = {}
    for dimension in DIMENSIONS:
        value = query.get(dimension)
        if value is None:
            continue
        if not value or len(value) > MAX_FILTER_LENGTH:
            raise QueryError(
                dimension, f"{dimension} must be 1-{MAX_FILTER_LENGTH} characters; got {value!r}"
            )
        filters[dimension] = value
    cursor = Cursor.decode(query["cursor"]) if "cursor" in query else None
    return JobQuery(status=status, limit=limit, cursor=cursor, filters=tuple(filters.items()))
