"""Records kept in Redis hashes that one service writes and another reads, declared once.

The writer stores a record with :func:`to_hash`, the reader gets it back with
:func:`from_hash`, which never fails: a missing field, or one an older writer wrote in a
shape that no longer reads, takes its default and the rest still shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import inspect as mi

from hookline.text import text

R = TypeVar("R", bound=msgspec.Struct)

Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
ObservedState = Literal["busy", "idle", "dead"]

_json = msgspec.json.Encoder()


class CurrentJob(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt a worker is running."""

    job_id: str
    attempt: Count = 0
    queue: str | None = None
    pipeline: str | None = None
    started_at: Instant | None = None


class WorkerHeartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """``{prefix}:worker:<name>``, rewritten by the worker at every heartbeat and read by
    the status API and ``hookline info``."""

    name: str = ""
    host: str | None = None
    pid: int | None = None
    queues: list[str] = []
    concurrency: Count | None = None
    busy: Count = 0
    jobs_done: Count = 0
    jobs_failed: Count = 0
    state: str | None = None  # the worker's own: starting, running, draining, stopping
    current_jobs: list[CurrentJob] = []
    started_at: Instant | None = None
    last_heartbeat: int | None = None  # ms since the epoch
    ttl: Seconds | None = None


class WorkerView(msgspec.Struct, frozen=True, kw_only=True):
    """One registered worker, as ``GET /workers`` and ``hookline info`` show it."""

    name: str
    host: str | None
    pid: int | None
    queues: list[str]
    state: ObservedState  # dead: no heartbeat for the worker TTL
    busy: Count
    concurrency: Count | None
    current_jobs: list[CurrentJob]
    jobs_done: Count
    jobs_failed: Count
    started_at: Instant | None
    last_heartbeat: Instant
    heartbeat_age_seconds: Seconds


def worker_view(
    name: str, beat_ms: int, beat: WorkerHeartbeat, now: float, ttl: float
) -> WorkerView:
    """A worker's view from its registry entry (name, last beat in ms) and its hash."""
    age = max(0.0, now - beat_ms / 1000)
    busy = max(beat.busy, len(beat.current_jobs))
    return WorkerView(
        name=name,
        host=beat.host,
        pid=beat.pid or None,
        queues=beat.queues,
        state=("busy" if busy else "idle") if age < ttl else "dead",
        busy=busy,
        concurrency=beat.concurrency,
        current_jobs=beat.current_jobs,
        jobs_done=beat.jobs_done,
        jobs_failed=beat.jobs_failed,
        started_at=beat.started_at,
        last_heartbeat=datetime.fromtimestamp(beat_ms / 1000, UTC),
        heartbeat_age_seconds=round(age, 3),
    )


# -- the hash codec ---------------------------------------------------------------------
#
# One rule for every record: text as it is, numbers in decimal, datetimes in ISO 8601,
# lists of names comma-separated (names never hold a comma), anything else as JSON.

Kind = Literal["text", "scalar", "names", "json"]
_SCALARS: Final = (mi.IntType, mi.FloatType, mi.BoolType, mi.DateTimeType, mi.LiteralType)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str
    kind: Kind
    type: Any


def _kind(annotation: Any) -> Kind:
    info = mi.type_info(annotation)
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    members = tuple(m for m in members if not isinstance(m, mi.NoneType))
    if all(isinstance(m, mi.StrType) for m in members):
        return "text"
    if all(isinstance(m, _SCALARS) for m in members):
        return "scalar"
    only = members[0] if len(members) == 1 else None
    if isinstance(only, mi.ListType) and isinstance(only.item_type, mi.StrType):
        return "names"
    return "json"


@cache
def _fields(cls: type[msgspec.Struct]) -> tuple[_Field, ...]:
    fields = msgspec.structs.fields(cls)
    if any(f.required for f in fields):
        raise TypeError(f"{cls.__name__}: a stored record gives every field a default")
    return tuple(_Field(f.name, f.encode_name, _kind(f.type), f.type) for f in fields)


def _text(value: Any, kind: Kind) -> str:
    if kind == "names":
        return ",".join(value)
    if kind == "json":
        return _json.encode(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_hash(record: msgspec.Struct) -> dict[str, str]:
    """The hash fields of a record; a field that is None is left out (it reads back as
    None). Write them over a deleted key, so no field of an older shape lingers."""
    out: dict[str, str] = {}
    for field in _fields(type(record)):
        value = getattr(record, field.name)
        if value is not None:
            out[field.key] = _text(value, field.kind)
    return out


def _value(text: str, field: _Field) -> Any:
    if field.kind == "text":
        return text
    if field.kind == "names":
        return [name for name in text.split(",") if name]
    if field.kind == "scalar":
        return msgspec.convert(text, field.type, strict=False)
    return msgspec.json.decode(text, type=field.type)


def from_hash(cls: type[R], raw: Mapping[bytes, bytes] | Mapping[str, str]) -> R:
    """A record from its hash fields (as HGETALL returns them); what is missing or does
    not read takes the field's default."""
    fields = {text(k): text(v) for k, v in raw.items()}
    upcast = _UPCASTS.get(cls)
    if upcast is not None:
        fields = upcast(fields)
    values: dict[str, Any] = {}
    for field in _fields(cls):
        found = fields.get(field.key)
        if found is None:
            continue
        try:
            values[field.name] = _value(found, field)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return cls(**values)


def _upcast_heartbeat(text: dict[str, str]) -> dict[str, str]:
    """Older workers wrote current job ids comma-separated, or one as ``current_job``."""
    current = text.get("current_jobs", text.get("current_job", ""))
    if current and not current.lstrip().startswith("["):
        ids = [{"job_id": job_id} for job_id in current.split(",") if job_id]
        text = {**text, "current_jobs": _json.encode(ids).decode()}
    return text


_UPCASTS: Final[dict[type[msgspec.Struct], Callable[[dict[str, str]], dict[str, str]]]] = {
    WorkerHeartbeat: _upcast_heartbeat
}

__all__ = [
    "CurrentJob",
    "WorkerHeartbeat",
    "WorkerView",
    "from_hash",
    "to_hash",
    "worker_view",
]
